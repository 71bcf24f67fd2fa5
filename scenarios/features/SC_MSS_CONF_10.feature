# language: fr
@exigence=SC.MSS/CONF.10 @exigence=SC.MSS/CONF.08 @exigence=SC.MSS/CONF.11
Fonctionnalité: SC.MSS/CONF.10, SC.MSS/CONF.08, SC.MSS/CONF.11 — Jeton Pro Santé Connect expiré ou refusé pendant l'envoi MSSanté
  La messagerie s'ouvre avec le jeton de la session Pro Santé Connect (XOAUTH2). Quand il expire en cours de
  session, l'opérateur MSSanté le dit (SMTP 530) : le LGC rafraîchit le jeton auprès de Pro Santé Connect et
  s'authentifie de nouveau, sans que le message soit remis deux fois (SC.MSS/CONF.10) ; une session IMAP que
  l'opérateur ferme (BYE) pour la même raison est rouverte d'elle-même (SC.MSS/CONF.11). Quand l'authentification
  est refusée, le LGC le signale avec son motif et ne relance pas en boucle (SC.MSS/CONF.08).

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Et l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"

  Scénario: Jeton expiré en session SMTP puis IMAP, puis authentification refusée
    Étant donné le jeton Pro Santé Connect de la session MSSanté expire à la première commande d'envoi
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est envoyée au patient par MSSanté
    Et la messagerie a signalé l'expiration, le LGC a rafraîchi le jeton et s'est authentifié de nouveau, et le message n'a été remis qu'une fois
    Étant donné le jeton Pro Santé Connect de la session IMAP expire à sa première commande
    Quand le médecin relève sa messagerie
    Alors la messagerie a fermé la session IMAP, et le LGC en a rouvert une avec un jeton rafraîchi, sans action du médecin
    Étant donné la messagerie refuse désormais toute authentification
    Quand le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'envoi MSSanté au patient est en échec
    Et le LGC n'a retenté qu'une fois, après avoir rafraîchi le jeton, sans relancer en boucle

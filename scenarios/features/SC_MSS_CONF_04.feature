# language: fr
@exigence=SC.MSS/CONF.04
Fonctionnalité: SC.MSS/CONF.04 — Configuration automatique de la boîte aux lettres MSSanté
  Le LGC lit le document de configuration automatique publié par l'opérateur de messagerie (clientConfig,
  /.well-known/autoconfig/mail/config-v1.1.xml) avant sa première connexion, et utilise les serveurs qu'il annonce
  pour l'envoi et la réception : STARTTLS et authentification par le jeton Pro Santé Connect (XOAUTH2), sans hôte
  ni port saisis à la main.
  Sur le banc, la messagerie configurée ainsi joint le simulateur MSSanté directement, sans la couche réseau.

  Contexte:
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect

  Scénario: Serveurs lus dans le document de l'opérateur, puis relève sur le serveur annoncé
    Quand le médecin configure automatiquement sa messagerie MSSanté
    Alors le LGC a lu le document de configuration automatique de l'opérateur et affiche les serveurs qu'il annonce
    Quand le médecin relève sa messagerie
    Alors la relève s'est connectée au serveur IMAP annoncé, en STARTTLS avec XOAUTH2, après la lecture du document

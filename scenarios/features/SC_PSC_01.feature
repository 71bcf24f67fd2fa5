# language: fr
@exigence=SC.PSC.01 @exigence=SC.PSC.02 @exigence=SC.PSC.08
Fonctionnalité: SC.PSC.01, SC.PSC.02, SC.PSC.08 — Connexion au LGC avec Pro Santé Connect
  Le professionnel se connecte au LGC avec Pro Santé Connect (SC.PSC.01) : flux « code d'autorisation » avec
  PKCE (S256) et le niveau d'authentification eIDAS 1. À la première connexion, le LGC rattache cette identité au
  compte local qui existait déjà, sans perdre ses données propres (SC.PSC.02). La session Pro Santé Connect sert
  ensuite aux services nationaux — DMP, messagerie — sans nouvelle identification (SC.PSC.08).

  Scénario: Première connexion, compte local associé, une seule authentification pour les services nationaux
    Étant donné le médecin "899700366240" connecté avec Pro Santé Connect
    Alors Pro Santé Connect a authentifié le médecin par un code d'autorisation avec PKCE (S256) et le niveau eIDAS 1
    Et le LGC a associé l'identité Pro Santé Connect au compte local "dr.doc0036624" qui existait déjà
    Quand l'identité de "BOUCHER" est qualifiée par l'Appli carte Vitale "167100093480710"
    Et le médecin rédige une ordonnance de produits de santé
    Et le médecin valide l'ordonnance
    Alors l'ordonnance est envoyée au DMP
    Et l'ordonnance est envoyée au patient par MSSanté
    Et le DMP et la messagerie ont accepté le jeton de cette connexion, sans nouvelle authentification
